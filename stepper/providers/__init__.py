"""Provider adapters, one module per vendor or engine; :mod:`stepper.contracts` defines what they are."""
