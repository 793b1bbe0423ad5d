"""bnn-example-plugin: a template bnn plugin.

It registers one binarizer (``example_swish_sign``), one model (``example_tiny_cnn``) and
one dataset (``example_stripes``). This package imports nothing at start-up, so
discovering the plugin never imports torch.
"""
