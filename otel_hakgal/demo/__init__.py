"""HAK-GAL reference service (miniature) used as demo, test bed and benchmark target."""
