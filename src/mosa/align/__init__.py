"""MOSA alignment: the objective (objective.py) and LoRA training with resumable checkpoints (trainer.py)."""
