"""Model builders (pure): completed spec → desired cloud resources."""
