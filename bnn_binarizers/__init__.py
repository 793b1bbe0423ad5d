"""Built-in binarizers, an ordinary bnn plugin (entry point ``bnn_binarizers``).

The classes live in submodules (``sign``, ``learnable``, ``weight``); this package
imports nothing at start-up so that plugin discovery stays free of torch.
"""
