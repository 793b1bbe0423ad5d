"""Built-in models, an ordinary bnn plugin (entry point ``bnn_models``)."""
