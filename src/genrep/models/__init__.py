"""Models (nn.Modules) and the registry that maps CLI names to model classes and configs."""
