"""bnn-example-plugin: a template bnn plugin.

It registers one binarizer (``example_swish_sign``), one model (``example_tiny_cnn``), one
dataset (``example_stripes``) and the export lowerings of the binarizer and of the
model's block (``ShiftedHardTanh``). This package imports nothing at start-up, so
discovering the plugin never imports torch.
"""
