"""Request and response models of the HTTP API that are not domain shapes."""
