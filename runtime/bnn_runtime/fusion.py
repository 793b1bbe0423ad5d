"""Float operations the runtime folds into the binary convolution before them.

A binary ResNet block ends with ``conv -> (batch norm, folded) -> + shortcut -> PReLU``
(Bi-Real Net; RPReLU in ReActNet). Run separately, the addition and the activation each
read and write the whole activation once more, in NumPy, after the kernel has already
written it; folded into the kernel they are applied to each output tile while it is
still in cache. This module finds such chains in a graph; the executor then plans the
convolution with the residual and activation (``bnn_runtime.layers.BinaryConv2d``'s
``residual``, ``slope``, ``shift_in`` and ``shift_out``) and the absorbed nodes pass
their input through. The results are bit for bit those of the separate steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from bnn_runtime.graph import Graph, Node

ACTIVATIONS = ("prelu", "rprelu")


@dataclass(frozen=True)
class Epilogue:
    """What a binary convolution absorbs: an addition of ``residual`` (``add``), then an
    activation node, either of them possibly absent."""

    add: Node | None
    residual: str | None
    activation: Node | None

    @property
    def absorbed(self) -> list[Node]:
        """The nodes whose work moves into the convolution, in order."""
        return [node for node in (self.add, self.activation) if node is not None]


def epilogues(graph: Graph, packed_producers: set[str]) -> dict[str, Epilogue]:
    """For each binary convolution with a float output that can absorb what follows it,
    its :class:`Epilogue`. A node is absorbed only when it is the single reader of the
    value before it and that value is not a graph output; the residual must be computed
    before the convolution runs."""
    users = graph.consumers()
    order = {node.name: index for index, node in enumerate(graph.nodes)}
    order[graph.input_name] = -1

    def only_reader(name: str) -> Node | None:
        readers = users.get(name, [])
        if name in graph.outputs or len(readers) != 1:
            return None
        return readers[0]

    found: dict[str, Epilogue] = {}
    for node in graph.nodes:
        if node.op != "binary_conv2d" or node.name in packed_producers:
            continue
        add, residual = None, None
        reader = only_reader(node.name)
        if reader is not None and reader.op == "add" and reader.inputs.count(node.name) == 1:
            other = next(source for source in reader.inputs if source != node.name)
            if order.get(other, len(order)) < order[node.name]:
                add, residual = reader, other
                reader = only_reader(reader.name)
        activation = reader if reader is not None and reader.op in ACTIVATIONS else None
        if add is not None or activation is not None:
            found[node.name] = Epilogue(add, residual, activation)
    return found
