package tpotest_test

import (
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest"
	"github.com/tpoproject/tpo/tpotest/storetest"
)

func TestMemStoreContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) tpo.Store { return tpotest.NewMemStore() })
}

func TestMemStoreJobs(t *testing.T) {
	storetest.RunJobs(t, func(*testing.T) tpo.JobStore { return tpotest.NewMemStore() })
}

func TestMemStoreClaims(t *testing.T) {
	storetest.RunClaims(t, func(*testing.T) storetest.ClaimStore { return tpotest.NewMemStore() })
}
