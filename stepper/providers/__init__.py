"""Provider adapters, one module per vendor or engine; :mod:`stepper.providers.base` defines what they are."""
