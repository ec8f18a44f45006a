"""Local ECS for development and tests: moto's ECS plus helpers that drive task state.

Production uses real ECS; nothing here is imported by the executor.
"""
