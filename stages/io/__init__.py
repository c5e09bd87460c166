"""Everything sesam reads and writes, in one place: one module per kind of file.

- ``atomic``: atomic writes (text, JSON with provenance) and the cleaning of killed writers' leftovers;
- ``artifacts``: HDF5 artifacts with provenance, input identities, up-to-date checks;
- ``images``: photos, label maps and single-channel PNGs (confidence, instance ids), size checks;
- one codec per artifact, its reader beside its writer and its stage name as ``STAGE``:
  ``components`` (decompose), ``boxes`` (boxes JSON), ``prompts`` (sample-prompts),
  ``embeddings`` (embed: the embedding cache's entries), ``masks`` (sam-predict), ``cams``
  (cam predict), ``coco`` (COCO instance annotations, select --instances), ``tags`` (image-level
  labels: tags JSON, tags CSV, inline lists).

The modules import nothing from the rest of ``stages`` but ``stages.errors`` and
``stages.presets`` (and each other, downwards: ``atomic`` <- ``images`` <- ``artifacts`` <- codecs),
so every stage can use them without an import circle. This file imports nothing.
"""
