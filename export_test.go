package tpo

// Names the tests of package tpo_test use.
var (
	Truncate      = truncate
	RenderQuery   = renderQuery
	ParseImproved = parseImproved
)
