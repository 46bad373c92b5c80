pytest_plugins = ["otel_hakgal.testing"]
