"""The project spec: what users write (models), the one path every command loads it by (load), and the
values commands derive from it, computed once (settings); plus the spec file `init` writes (write) and
in-place edits that keep its comments (edit). Commands start at `spec.load.load_project`."""
