"""Rule families: one module per family, each owning its kinds' parameters, scanner and check.

`base` holds what every unit is made of; `patterns` the pattern helpers content rules
share. Which kinds exist is said in one place, `gateway.policy.registry.default_registry`.
"""
