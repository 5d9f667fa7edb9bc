"""Modal dialogs, each a ModalScreen returning the answer."""
