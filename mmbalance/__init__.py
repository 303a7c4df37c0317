"""mmbalance: rebalancing multimodal learning through data sampling (DUS, BSS)."""

__version__ = "0.1.0"
