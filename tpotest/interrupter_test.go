package tpotest

import "testing"

func TestMemStoreInterrupter(t *testing.T) { TestInterrupter(t, NewMemStore()) }
