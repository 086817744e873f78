"""Plan/apply engine: desired resources, dependency graph, diff, plan rendering and execution (no AWS)."""
