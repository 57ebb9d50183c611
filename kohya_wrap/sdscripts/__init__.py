"""Everything kohya-wrap knows about sd-scripts: the families it trains (families), where it is
(locate), what it accepts (schema, read by introspect inside its venv), the configs it reads (render),
its arithmetic (stepmath), its file names (naming) and prompt lines (prompts), its learning-rate
schedules (lrsched), model references (modelref), and its checkout and venv (vendor/)."""
