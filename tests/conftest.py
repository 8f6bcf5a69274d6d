pytest_plugins = ["kai.testing.pytest_plugin"]
