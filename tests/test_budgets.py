"""The time budgets of the admission path fit inside the webhook timeouts the API server applies,
and the rendered webhook configurations carry those same timeouts."""

from __future__ import annotations

from webhook.admission import budgets
from webhook.config.policy_file import load_policy
from webhook.deploy.objects import (
    DeployOptions,
    mutating_webhook_configuration,
    validating_webhook_configuration,
)


def test_a_validation_that_looks_up_its_namespace_and_ensures_policies_still_answers_in_time() -> (
    None
):
    spent = budgets.NAMESPACE_LOOKUP_BUDGET_S + budgets.NETWORK_POLICY_ENSURE_BUDGET_S
    assert spent + budgets.ANSWER_MARGIN_S <= budgets.VALIDATION_TIMEOUT_S


def test_a_mutation_that_looks_up_its_namespace_answers_in_time() -> None:
    spent = budgets.NAMESPACE_LOOKUP_BUDGET_S + budgets.ANSWER_MARGIN_S
    assert spent <= budgets.MUTATION_TIMEOUT_S


def test_the_namespace_preview_lists_within_its_timeout() -> None:
    spent = budgets.WORKLOAD_LIST_BUDGET_S + budgets.ANSWER_MARGIN_S
    assert spent <= budgets.NAMESPACE_PREVIEW_TIMEOUT_S


def test_every_budget_leaves_time_to_do_something() -> None:
    for budget in (
        budgets.NAMESPACE_LOOKUP_BUDGET_S,
        budgets.NETWORK_POLICY_ENSURE_BUDGET_S,
        budgets.WORKLOAD_LIST_BUDGET_S,
    ):
        assert budget >= 0.5


def test_the_webhook_configurations_carry_the_timeouts_the_budgets_derive_from() -> None:
    policy, options = load_policy(None), DeployOptions()
    timeouts = {
        hook["name"].partition(".")[0]: hook["timeoutSeconds"]
        for configuration in (
            validating_webhook_configuration(policy, options),
            mutating_webhook_configuration(policy, options),
        )
        for hook in configuration["webhooks"]
    }
    assert timeouts == {
        "workloads": budgets.VALIDATION_TIMEOUT_S,
        "workloads-preview": budgets.VALIDATION_TIMEOUT_S,
        "namespaces": budgets.NAMESPACE_PREVIEW_TIMEOUT_S,
        "networkpolicies": budgets.VALIDATION_TIMEOUT_S,
        "networkpolicies-preview": budgets.VALIDATION_TIMEOUT_S,
        "pods": budgets.MUTATION_TIMEOUT_S,
    }
