"""Built-in datasets, an ordinary bnn plugin (entry point ``bnn_datasets``)."""
