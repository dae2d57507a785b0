"""Rules shared by the stage that applies them and the landing gate that guards them: one
implementation each, so a stage and its gate cannot disagree about the same row."""
