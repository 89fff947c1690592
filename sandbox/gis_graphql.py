"""GraphQL for the GIS simulator: the schema, its resolvers, and answering a query.

Each distinct query text is parsed and validated once with graphql-core against
sandbox/schema.graphql. graphql-core then resolves every field of an answer through its
executor: a page of 500 applications as the fleet asks for them is 20,000 fields and
~210 ms of CPU. So a valid query that selects plain fields only (one operation; no
fragments, directives, merged fields or introspection) is also compiled into a plan
(`CompiledQuery`) that reads the same attributes (a Mapping's keys, any other object's
attributes: graphql-core's default resolver) and serializes leaves with the same scalar
types: ~30 ms for that page. Variables and arguments are coerced by graphql-core's own
functions. Anything the plan cannot answer exactly as graphql-core would (other
documents, variables that do not coerce, an error in a resolver, a null where the
schema forbids one) is answered by graphql-core itself, so errors read as they did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    build_schema,
    execute_sync,
    parse,
    validate,
)
from graphql.execution import get_argument_values, get_variable_values

from sandbox.gis_lists import all_applications, all_people
from sandbox.worlds.gis import World

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")
MAX_DOCUMENTS = 1000  # distinct query texts kept parsed


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def load_schema() -> GraphQLSchema:
    schema = build_schema(SCHEMA_PATH.read_text())
    fields = schema.query_type.fields  # type: ignore[union-attr]
    fields["allPeople"].resolve = all_people
    fields["allOpportunityApplication"].resolve = all_applications
    fields["person"].resolve = lambda _, info, id: info.context.people_by_id.get(_int(id))
    fields["getApplication"].resolve = \
        lambda _, info, id: info.context.applications_by_id.get(_int(id))
    fields["currentPerson"].resolve = lambda _, info: next(iter(info.context.people), None)
    return schema


class Answer(NamedTuple):
    body: dict[str, Any]
    rejected: bool  # a request error: no data at all (the HTTP layer counts it "schema")


class GisGraphql:
    """Parsed documents and their plans, per query text; answers queries over a world."""

    def __init__(self) -> None:
        self.schema = load_schema()
        self._documents: dict[str, Prepared] = {}

    def prepared(self, query: str) -> Prepared:
        found = self._documents.get(query)
        if found is None:
            if len(self._documents) >= MAX_DOCUMENTS:
                self._documents.clear()
            found = self._documents[query] = Prepared(self.schema, query)
        return found

    def answer(self, query: str, variables: dict[str, Any] | None, operation: str | None,
               world: World) -> Answer:
        prepared = self.prepared(query)
        document = prepared.document
        if document is None:
            return Answer({"errors": [e.formatted for e in prepared.errors]}, True)
        plan = prepared.plan(operation)
        if plan is not None:
            data = plan.run(self.schema, variables, world)
            if data is not None:
                return Answer({"data": data}, False)
        result = execute_sync(self.schema, document, context_value=world,
                              variable_values=variables, operation_name=operation)
        if result.errors and result.data is None:
            return Answer({"errors": [e.formatted for e in result.errors]}, True)
        return Answer(result.formatted, False)  # type: ignore[arg-type]


class Prepared:
    """One query text: parsed and validated, its plans compiled on first use."""

    def __init__(self, schema: GraphQLSchema, query: str) -> None:
        self.schema = schema
        self.document: DocumentNode | None = None
        self.errors: list[GraphQLError] = []
        self._plans: dict[str | None, CompiledQuery | None] = {}
        try:
            document = parse(query)
        except GraphQLError as exc:
            self.errors = [exc]
            return
        self.errors = list(validate(schema, document))
        if not self.errors:
            self.document = document

    def plan(self, operation: str | None) -> CompiledQuery | None:
        if operation not in self._plans:
            self._plans[operation] = _compile(self.schema, self.document, operation)
        return self._plans[operation]


# --- plans ----------------------------------------------------------------------------
class _Unanswerable(Exception):  # control flow: graphql-core answers instead
    """The plan cannot answer exactly as graphql-core would."""


Complete = Callable[[Any], Any]  # a resolved value (not None) -> its part of the answer


class Selection(NamedTuple):
    """One field of a selection set: its response key, where its value comes from (a
    dict key or an attribute) and how a value that is not None becomes part of the
    answer (a tuple: _object unpacks it for every field of every record)."""

    key: str
    name: str
    complete: Complete
    non_null: bool


def _object(source: Any, fields: tuple[Selection, ...]) -> dict[str, Any]:
    """The answer for one object: graphql-core's default resolver reads a Mapping's keys
    and any other object's attributes."""
    mapping = type(source) is dict or isinstance(source, Mapping)
    answer = {}
    for key, name, complete, non_null in fields:
        value = source.get(name) if mapping else getattr(source, name, None)
        if value is not None:
            answer[key] = complete(value)
        elif non_null:
            raise _Unanswerable  # graphql-core nulls the parent and reports an error
        else:
            answer[key] = None
    return answer


def _completion(kind: Any, fields: tuple[Selection, ...]) -> Complete:
    """How a value of the (unwrapped) type `kind` is completed, as graphql-core does."""
    if isinstance(kind, GraphQLScalarType):
        # A callable value is not serializable: graphql-core answers (it calls it).
        return kind.serialize

    def complete_object(value: Any) -> dict[str, Any]:
        if callable(value):  # graphql-core's default resolver would call it
            raise _Unanswerable
        return _object(value, fields)

    return complete_object


def _listed(complete: Complete, items_non_null: bool) -> Complete:
    def complete_list(value: Any) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise _Unanswerable
        if items_non_null and None in value:
            raise _Unanswerable
        return [None if item is None else complete(item) for item in value]

    return complete_list


@dataclass(frozen=True)
class RootField:
    selection: Selection
    definition: GraphQLField
    node: FieldNode


@dataclass(frozen=True)
class CompiledQuery:
    operation: OperationDefinitionNode
    roots: tuple[RootField, ...]

    def run(self, schema: GraphQLSchema, variables: dict[str, Any] | None,
            world: World) -> dict[str, Any] | None:
        """The answer's data, or None when graphql-core must answer."""
        info = _Info(world)
        data: dict[str, Any] = {}
        try:
            coerced = get_variable_values(schema, self.operation.variable_definitions or (),
                                          variables or {})
            if isinstance(coerced, list):  # variables that do not coerce: its errors
                return None
            for root in self.roots:
                args = get_argument_values(root.definition, root.node, coerced)
                value = root.definition.resolve(None, info, **args)  # type: ignore[misc]
                # the root value as if read from a parent: same null handling
                data.update(_object({root.selection.name: value}, (root.selection,)))
        except Exception:  # graphql-core answers, with its own wording
            return None
        return data


class _Info:
    """What the resolvers read from graphql-core's ResolveInfo: the world."""

    __slots__ = ("context",)

    def __init__(self, context: World) -> None:
        self.context = context


def _compile(schema: GraphQLSchema, document: DocumentNode | None,
             operation: str | None) -> CompiledQuery | None:
    if document is None or any(isinstance(d, FragmentDefinitionNode)
                               for d in document.definitions):
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
        return None
    op = operations[0]
    if operation is not None and (op.name is None or op.name.value != operation):
        return None
    query_type = schema.query_type
    try:
        nodes = _fields(op.selection_set)
        roots = []
        for node in nodes:
            definition = query_type.fields[node.name.value]  # type: ignore[union-attr]
            if definition.resolve is None:
                return None
            roots.append(RootField(_selection(node, definition), definition, node))
    except _Unanswerable:
        return None
    return CompiledQuery(op, tuple(roots))


def _fields(selection_set: SelectionSetNode | None) -> list[FieldNode]:
    """The plain fields of a selection set, else _Unanswerable."""
    nodes = list(selection_set.selections) if selection_set else []
    for node in nodes:
        if not isinstance(node, FieldNode) or node.directives \
                or node.name.value.startswith("__"):
            raise _Unanswerable
    fields: list[FieldNode] = nodes  # type: ignore[assignment]
    if len({(f.alias or f.name).value for f in fields}) != len(fields):
        raise _Unanswerable  # fields to merge: graphql-core merges them
    return fields


def _selection(node: FieldNode, definition: GraphQLField) -> Selection:
    kind = definition.type
    non_null = isinstance(kind, GraphQLNonNull)
    kind = kind.of_type if non_null else kind  # type: ignore[union-attr]
    is_list = isinstance(kind, GraphQLList)
    kind = kind.of_type if is_list else kind  # type: ignore[union-attr]
    items_non_null = isinstance(kind, GraphQLNonNull)
    kind = kind.of_type if items_non_null else kind  # type: ignore[union-attr]
    if isinstance(kind, GraphQLObjectType):
        fields = tuple(_selection(child, kind.fields[child.name.value])
                       for child in _fields(node.selection_set))
    elif isinstance(kind, GraphQLScalarType):
        fields = ()
    else:
        raise _Unanswerable  # lists of lists, interfaces, unions: not in this schema
    complete = _completion(kind, fields)
    if is_list:
        complete = _listed(complete, items_non_null)
    key = node.alias.value if node.alias else node.name.value
    return Selection(key, node.name.value, complete, non_null)
