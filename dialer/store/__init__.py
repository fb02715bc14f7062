"""Persistence: the models, the migrations, the engine, and one writer module per aggregate."""
