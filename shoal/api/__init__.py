"""Model types (Docker API shapes), ordered task states and JSON codecs.

The Docker Engine API's own object shapes are shoal's internal model, so the API is
compatible by construction (DESIGN.md, "Object model").
"""
