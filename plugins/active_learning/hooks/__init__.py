"""Thin hooks on the Amazon provider's ``AwsBaseHook`` for what the provider lacks."""
