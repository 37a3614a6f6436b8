"""Composing the cited narrative: claims to sentences, disagreements, optional re-phrasing."""
