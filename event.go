package tpo

// Event is something that happened during an optimization. The concrete types
// are StepStarted, CandidatesScored, Critique, Instructions, UpdateParsed,
// StepFinished and Done. Handlers are called synchronously from the
// optimizing goroutine and must not block for long.
type Event interface {
	// Item is the ID of the item being optimized.
	Item() string
	event()
}

// EventBase carries what every event has.
type EventBase struct {
	ItemID string `json:"item"`
	// Step is the step the event belongs to (0 for the initial samples).
	Step int `json:"step"`
}

// Item implements Event.
func (e EventBase) Item() string { return e.ItemID }
func (EventBase) event()         {}

// StepStarted is sent when a step begins.
type StepStarted struct {
	EventBase
	Depth int `json:"depth"` // the number of update steps planned
}

// CandidatesScored is sent when new candidates have been scored. Best is the
// best score of the whole cache so far.
type CandidatesScored struct {
	EventBase
	Candidates []Candidate `json:"candidates"`
	Best       float64     `json:"best"`
}

// Critique is sent when the textual loss has been computed.
type Critique struct {
	EventBase
	Chosen   Ref    `json:"chosen"`
	Rejected *Ref   `json:"rejected,omitempty"`
	Text     string `json:"text"`
}

// Instructions is sent when the textual gradient has been computed.
type Instructions struct {
	EventBase
	Text string `json:"text"`
}

// UpdateParsed is sent when the update samples have been parsed.
type UpdateParsed struct {
	EventBase
	Parsed   int `json:"parsed"`
	Unparsed int `json:"unparsed"`
}

// StepFinished is sent when a step is complete (and saved, when a store is used).
type StepFinished struct {
	EventBase
	Data Step `json:"data"`
}

// Done is sent when the optimization of an item ends, with its result.
type Done struct {
	EventBase
	Result Result `json:"result"`
}
