"""Test doubles that are real programs: a local imitation of Instagram (:mod:`.fake_instagram`)."""
