"""Training images on disk: a concept folder as sd-scripts sees it (scan), each image's size, damage,
orientation and transparency, cached per project (facts), photos copied in (importer), `prep` (prep per
concept, images per photo), near-duplicate hashes (dhash) and CLIP token counts (tokens)."""
