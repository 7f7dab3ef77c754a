"""The stem transformer: a small GPT-2 trained with Subtractive Training to write one stem
bar by bar for the rest of a song (vocabulary, encoding, model, sampling, training)."""
