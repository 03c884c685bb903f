package tpo

import (
	"fmt"
	"strings"
	"time"
)

// The read side: what a store reports of its runs and items, for the web
// UI, reports and exports. Every store implements the same methods over
// these types (see package sqlite); the UI declares the interface it needs.

// ItemStatus is the state of an item, and a filter on it.
type ItemStatus string

// The statuses.
const (
	StatusAll     ItemStatus = "all"     // a filter that keeps every item
	StatusDone    ItemStatus = "done"    // finished without error
	StatusFailed  ItemStatus = "failed"  // finished with an error
	StatusPending ItemStatus = "pending" // not finished
)

// RunSummary is a run with aggregates over its items.
type RunSummary struct {
	Run
	Items   int `json:"items"`   // items recorded
	Done    int `json:"done"`    // items finished without error
	Failed  int `json:"failed"`  // items finished with an error
	Pending int `json:"pending"` // items not finished
	// Scored counts the done items with a score; the means are over them,
	// and nil when there is none.
	Scored    int      `json:"scored"`
	MeanScore *float64 `json:"mean_score"`
	// MeanGain is the mean of Score - InitialBest: what the optimization
	// added to best of N.
	MeanGain *float64 `json:"mean_gain"`
	// Improved counts the done items whose score beat their initial best.
	Improved int   `json:"improved"`
	Usage    Usage `json:"usage"` // over every item, finished or not
	// Started is when the first item was started, Updated when the last
	// step or result was saved; nil for a run without items.
	Started *time.Time `json:"started"`
	Updated *time.Time `json:"updated"`
}

// ItemSummary is what a listing shows of an item.
type ItemSummary struct {
	RunID  string     `json:"run_id"`
	ID     string     `json:"id"`
	Seq    int        `json:"seq"`
	Prompt string     `json:"prompt"` // the last user turn, cut to PromptPreview bytes
	Status ItemStatus `json:"status"` // done, failed or pending
	Error  string     `json:"error,omitempty"`
	Steps  int        `json:"steps"` // steps saved
	// Score is the best score so far (the result's once done), InitialBest
	// the best score of step 0, and Gain the difference; nil while unknown.
	Score       *float64  `json:"score"`
	InitialBest *float64  `json:"initial_best"`
	Gain        *float64  `json:"gain"`
	Usage       Usage     `json:"usage"`
	Started     time.Time `json:"started"`
	// Updated is when the item last changed; Finished when it finished.
	Updated  time.Time  `json:"updated"`
	Finished *time.Time `json:"finished,omitempty"`
	// Duration is the wall time from start to finish, or to the last
	// update while pending (including any time the run was stopped).
	Duration time.Duration `json:"duration_ns"`
}

// PromptPreview is how many bytes of the prompt ItemSummary holds.
const PromptPreview = 200

// ItemOrder sorts an item listing: one of "seq" (the default), "id",
// "score", "gain", "tokens" or "duration", ascending, or descending with a
// "-" prefix ("-score" lists the best first). Items without a score or gain
// come last either way; ties are broken by seq.
type ItemOrder string

// ItemOrderKeys are the keys an ItemOrder may name.
var ItemOrderKeys = []string{"seq", "id", "score", "gain", "tokens", "duration"}

// Key returns the key o sorts by and whether it sorts descending, or an
// error naming the valid keys.
func (o ItemOrder) Key() (key string, desc bool, err error) {
	key, desc = strings.CutPrefix(string(o), "-")
	if key == "" {
		key = "seq"
	}
	for _, k := range ItemOrderKeys {
		if k == key {
			return key, desc, nil
		}
	}
	return "", false, fmt.Errorf("unknown order %q (want %s, optionally with a - prefix)", string(o), strings.Join(ItemOrderKeys, ", "))
}

// ItemFilter selects and orders items of a run.
type ItemFilter struct {
	// Query keeps items whose id or prompt contains it (case-insensitive
	// for ASCII letters).
	Query  string
	Status ItemStatus // "" keeps every item, like StatusAll
	Order  ItemOrder
	Limit  int // at most this many items; <= 0 means no limit
	Offset int // skip this many items first
}

// LiveRun describes an optimization in flight in a server process.
type LiveRun struct {
	RunID   string    `json:"run_id"`
	Model   string    `json:"model"`
	Mode    Mode      `json:"mode"`
	Width   int       `json:"width"`
	Depth   int       `json:"depth"`
	Prompt  string    `json:"prompt"`
	Started time.Time `json:"started"`
}
