"""What autogen-core's tests must do on axonbus.runtime.

``TESTS`` lists every test of the files run; each must pass, except the deliberate
differences in ``DIFFERENCES`` (also tabled in the README's actors section), which must fail
with the given text in their failure. Anything else is a failure of this suite.
"""

from __future__ import annotations

FILES = (
    "test_runtime.py",
    "test_routed_agent.py",
    "test_subscription.py",
    "test_cancellation.py",
    "test_intervention.py",
    "test_state.py",
    "test_closure_agent.py",
    "test_base_agent.py",
    "test_types.py",
)

TESTS: tuple[str, ...] = (
    "test_runtime.py::test_agent_type_register_factory",
    "test_runtime.py::test_agent_type_must_be_unique",
    "test_runtime.py::test_agent_type_register_instance",
    "test_runtime.py::test_agent_type_register_instance_different_types",
    "test_runtime.py::test_agent_type_register_instance_publish_new_source",
    "test_runtime.py::test_register_instance_factory",
    "test_runtime.py::test_register_receives_publish",
    "test_runtime.py::test_register_receives_publish_with_construction",
    "test_runtime.py::test_register_receives_publish_cascade",
    "test_runtime.py::test_register_factory_explicit_name",
    "test_runtime.py::test_default_subscription",
    "test_runtime.py::test_type_subscription",
    "test_runtime.py::test_default_subscription_publish_to_other_source",
    "test_runtime.py::test_event_handler_exception_propogates",
    "test_runtime.py::test_event_handler_exception_multi_message",
    "test_routed_agent.py::test_routed_agent",
    "test_routed_agent.py::test_message_handler_router",
    "test_routed_agent.py::test_routed_agent_message_matching",
    "test_routed_agent.py::test_event",
    "test_routed_agent.py::test_rpc",
    "test_subscription.py::test_type_subscription_match",
    "test_subscription.py::test_type_subscription_map",
    "test_subscription.py::test_non_default_default_subscription",
    "test_subscription.py::test_skipped_class_subscriptions",
    "test_subscription.py::test_subscription_deduplication",
    "test_cancellation.py::test_cancellation_with_token",
    "test_cancellation.py::test_nested_cancellation_only_outer_called",
    "test_cancellation.py::test_nested_cancellation_inner_called",
    "test_intervention.py::test_intervention_count_messages",
    "test_intervention.py::test_intervention_drop_send",
    "test_intervention.py::test_intervention_drop_response",
    "test_intervention.py::test_intervention_raise_exception_on_send",
    "test_intervention.py::test_intervention_raise_exception_on_respond",
    "test_state.py::test_agent_can_save_state",
    "test_state.py::test_runtime_can_save_state",
    "test_closure_agent.py::test_register_receives_publish",
    "test_base_agent.py::test_base_agent_create",
    "test_types.py::test_get_types",
    "test_types.py::test_handler",
    "test_types.py::test_nested_data_model",
)

#: test id -> (text its failure must contain, why axonbus differs)
DIFFERENCES: dict[str, tuple[str, str]] = {
    "test_runtime.py::test_register_receives_publish": (
        "assert len(exported_spans) == 3",
        "autogen's own span names: the in-process runtime opens no spans of its own "
        "(tracer_provider traces what crosses the bus)",
    ),
    "test_routed_agent.py::test_event": (
        "CantHandle",
        "a send to an agent with no handler for it raises CantHandle; autogen logs it and "
        "returns None",
    ),
}
