package tpotest

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tpoproject/tpo"
)

// memJobs is the tpo.JobStore of a MemStore.
type memJobs struct {
	mu   sync.Mutex
	jobs map[[2]string]tpo.Job // kind, id
}

var _ tpo.JobStore = (*MemStore)(nil)

// PutJob implements tpo.JobStore.
func (m *MemStore) PutJob(ctx context.Context, job tpo.Job) error {
	if job.Kind == "" || job.ID == "" {
		return fmt.Errorf("put job %q of kind %q: empty kind or id", job.ID, job.Kind)
	}
	if !json.Valid(job.Data) {
		return fmt.Errorf("put %s %q: data is not valid JSON", job.Kind, job.ID)
	}
	m.jobs.mu.Lock()
	defer m.jobs.mu.Unlock()
	if m.jobs.jobs == nil {
		m.jobs.jobs = map[[2]string]tpo.Job{}
	}
	k := [2]string{job.Kind, job.ID}
	if old, ok := m.jobs.jobs[k]; ok && old.CancelRequested != nil {
		job.CancelRequested = old.CancelRequested
	}
	m.jobs.jobs[k] = cloneJob(job)
	return nil
}

// GetJob implements tpo.JobStore.
func (m *MemStore) GetJob(ctx context.Context, kind, id string) (tpo.Job, error) {
	m.jobs.mu.Lock()
	defer m.jobs.mu.Unlock()
	j, ok := m.jobs.jobs[[2]string{kind, id}]
	if !ok {
		return tpo.Job{}, fmt.Errorf("%s %q: %w", kind, id, tpo.ErrNotFound)
	}
	return cloneJob(j), nil
}

// ListJobs implements tpo.JobStore.
func (m *MemStore) ListJobs(ctx context.Context, kind, after string, limit int) ([]tpo.Job, error) {
	all := m.jobsOf(kind, func(tpo.Job) bool { return true })
	slices.Reverse(all)
	if after != "" {
		i := slices.IndexFunc(all, func(j tpo.Job) bool { return j.ID == after })
		if i < 0 {
			return nil, fmt.Errorf("%s %q: %w", kind, after, tpo.ErrNotFound)
		}
		all = all[i+1:]
	}
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}

// UnfinishedJobs implements tpo.JobStore.
func (m *MemStore) UnfinishedJobs(ctx context.Context, kind, host string) ([]tpo.Job, error) {
	return m.jobsOf(kind, func(j tpo.Job) bool { return j.Finished == nil && j.Owner != nil && j.Owner.Host == host }), nil
}

// ClaimJob implements tpo.JobStore.
func (m *MemStore) ClaimJob(ctx context.Context, kind, id string, from tpo.Owner, to *tpo.Owner) (bool, error) {
	m.jobs.mu.Lock()
	defer m.jobs.mu.Unlock()
	k := [2]string{kind, id}
	j, ok := m.jobs.jobs[k]
	if !ok {
		return false, fmt.Errorf("claim %s %q: %w", kind, id, tpo.ErrNotFound)
	}
	if j.Finished != nil || j.Owner == nil || !j.Owner.SameProcess(from) {
		return false, nil
	}
	j.Owner = nil
	if to != nil {
		o := *to
		j.Owner = &o
	}
	m.jobs.jobs[k] = j
	return true, nil
}

// RequestCancel implements tpo.JobStore.
func (m *MemStore) RequestCancel(ctx context.Context, kind, id string, at time.Time) (tpo.Job, error) {
	m.jobs.mu.Lock()
	defer m.jobs.mu.Unlock()
	k := [2]string{kind, id}
	j, ok := m.jobs.jobs[k]
	if !ok {
		return tpo.Job{}, fmt.Errorf("request the cancel of %s %q: %w", kind, id, tpo.ErrNotFound)
	}
	if j.Finished == nil && j.CancelRequested == nil {
		j.CancelRequested = &at
		m.jobs.jobs[k] = j
	}
	return cloneJob(j), nil
}

// jobsOf returns the jobs of kind that keep says to keep, oldest first.
func (m *MemStore) jobsOf(kind string, keep func(tpo.Job) bool) []tpo.Job {
	m.jobs.mu.Lock()
	defer m.jobs.mu.Unlock()
	var out []tpo.Job
	for k, j := range m.jobs.jobs {
		if k[0] == kind && keep(j) {
			out = append(out, cloneJob(j))
		}
	}
	slices.SortFunc(out, func(a, b tpo.Job) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return out
}

func cloneJob(j tpo.Job) tpo.Job {
	j.Data = slices.Clone(j.Data)
	if j.Owner != nil {
		o := *j.Owner
		j.Owner = &o
	}
	if j.Finished != nil {
		f := *j.Finished
		j.Finished = &f
	}
	if j.CancelRequested != nil {
		c := *j.CancelRequested
		j.CancelRequested = &c
	}
	return j
}
