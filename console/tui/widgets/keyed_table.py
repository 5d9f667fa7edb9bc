"""A row-cursor table whose rows carry keys: refreshed in place, so the cursor and scroll stay put."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from flctl.console.tui.cells import literal


class KeyedTable(DataTable[Text]):
    """Cells are `literal`: what a peer wrote (a site's reason, a job's name) is never read as markup."""

    COLUMNS: tuple[str, ...] = ()

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for column in self.COLUMNS:
            self.add_column(column, key=column)

    def show_rows(self, rows: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Show `rows` (key, cells): update cells in place when the keys are unchanged, else rebuild."""
        if [key for key, _ in rows] == [row.key.value for row in self.ordered_rows]:
            for key, values in rows:
                for column, value in zip(self.COLUMNS, values, strict=True):
                    if self.get_cell(key, column).plain != value:
                        self.update_cell(key, column, literal(value), update_width=True)
            return
        keep = self.selected
        self.clear()
        for key, values in rows:
            self.add_row(*map(literal, values), key=key)
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep))

    @property
    def selected(self) -> str | None:
        """The key of the row under the cursor."""
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
