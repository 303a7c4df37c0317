"""RLlib and Tune on top of the environments: learn sampling policies, export them."""
