"""Built-in binarizers and binarization methods, an ordinary bnn plugin (entry point
``bnn_binarizers``).

The classes live in submodules: ``sign`` (element-wise signs), ``learnable`` (learned
shifts and scales), ``weight`` (analytic per-channel weight scales), ``quantizers``
({0,1}, ternary, k-bit), ``scaled`` (XNOR-Net's input scale, XNOR-Net++'s factorised
output scale), ``progressive`` and ``standardised`` (FDA, IR-Net, ReCU), ``affine``
(AdaBin); ``schedules`` holds the training schedules and ``bundles`` the named methods.
This package imports nothing at start-up so that plugin discovery stays free of torch.
"""
