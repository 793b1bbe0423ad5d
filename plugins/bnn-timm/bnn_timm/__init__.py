"""bnn-timm: timm's image-classification models in bnn's model registry as ``timm/<name>``.

Importing this package imports neither torch nor timm; timm is imported when a model is
built.
"""
