"""Tests of policy on the data path: RequestAuthentication and AuthorizationPolicy as Envoy filters."""
