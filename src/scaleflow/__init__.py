"""scaleflow: flow matching on embedding vectors, and model-scale studies."""
