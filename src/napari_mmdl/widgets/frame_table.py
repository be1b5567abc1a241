"""A read-only Qt table over a DataFrame: cells are formatted when shown, never copied into items.

The grain table of a stack holds tens of thousands of rows; filling a
``QTableWidget`` item by item blocks the GUI thread for seconds. ``FrameTable``
is a ``QTableView`` on a model that formats only the cells the view paints, with
the few ``QTableWidget`` methods the widgets use (``rowCount``, ``currentRow``,
``cellClicked``), so setting a table of any length takes milliseconds.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QTableView

__all__ = ["FrameTable", "format_cell"]


def format_cell(v) -> str:
    """How a table cell reads: 4 significant digits for floats (NaN as "nan"), text otherwise, empty for None.

    Examples
    --------
    >>> format_cell(3.14159), format_cell(12), format_cell(None), format_cell(float("nan"))
    ('3.142', '12', '', 'nan')
    """
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return "" if v is None else str(v)


class _FrameModel(QAbstractTableModel):
    def __init__(self):
        super().__init__()
        self.values = np.empty((0, 0), dtype=object)
        self.headers: list[str] = []

    def set(self, values, headers):
        self.beginResetModel()
        self.values, self.headers = values, list(headers)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()):  # noqa: N802 - Qt's name
        return 0 if parent.isValid() else int(self.values.shape[0])

    def columnCount(self, parent=QModelIndex()):  # noqa: N802 - Qt's name
        return 0 if parent.isValid() else len(self.headers)

    def data(self, index, role=Qt.DisplayRole):
        if role == Qt.DisplayRole and index.isValid():
            return format_cell(self.values[index.row(), index.column()])
        return None

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802 - Qt's name
        if role != Qt.DisplayRole:
            return None
        if orientation == Qt.Horizontal:
            return self.headers[section] if section < len(self.headers) else None
        return str(section + 1)


class FrameTable(QTableView):
    """Rows of a DataFrame, one selected at a time; ``cellClicked(row, column)`` as ``QTableWidget`` has.

    Examples
    --------
    >>> import pandas as pd                                        # doctest: +SKIP
    >>> t = FrameTable(["label", "area [µm²]"])                    # doctest: +SKIP
    >>> t.set_frame(pd.DataFrame({"label": [1, 2], "area": [0.5, 0.25]}), ["label", "area"],
    ...             ["label", "area [µm²]"])                       # doctest: +SKIP
    >>> t.rowCount(), t.model().data(t.model().index(1, 1))       # doctest: +SKIP
    (2, '0.25')
    """

    cellClicked = Signal(int, int)  # noqa: N815 - the QTableWidget signal's name

    def __init__(self, headers=()):
        super().__init__()
        self._model = _FrameModel()
        self._model.set(np.empty((0, len(headers)), dtype=object), headers)
        self.setModel(self._model)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.clicked.connect(lambda index: self.cellClicked.emit(index.row(), index.column()))

    def set_frame(self, df, cols, headers) -> None:
        """Show columns ``cols`` of ``df`` under ``headers`` (the values are kept, not formatted)."""
        self._model.set(df[list(cols)].to_numpy(dtype=object), headers)

    def rowCount(self) -> int:  # noqa: N802 - QTableWidget's name
        return self._model.rowCount()

    def columnCount(self) -> int:  # noqa: N802 - QTableWidget's name
        return self._model.columnCount()

    def currentRow(self) -> int:  # noqa: N802 - QTableWidget's name
        return self.currentIndex().row() if self.currentIndex().isValid() else -1

    def cell_text(self, row: int, column: int) -> str:
        """The text shown in a cell."""
        return self._model.data(self._model.index(row, column))

    def selectRow(self, row: int) -> None:  # noqa: N802 - Qt's name
        """Select (and make current) row ``row`` and scroll to it."""
        index = self._model.index(int(row), 0)
        self.setCurrentIndex(index)
        super().selectRow(int(row))
        self.scrollTo(index)
