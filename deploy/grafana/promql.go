// Package grafana holds watershed's Grafana dashboards (dashboards/) and
// their provisioning (provisioning/), and the check that keeps them honest:
// its tests read every PromQL query of every panel and fail when a query
// names no metric or a metric that the watershed processes do not export.
// The package has no API; its code is the metric-name extractor the tests
// use.
package grafana

import (
	"fmt"
	"regexp"
	"strings"
)

// PromQL words that are not metric names where an identifier stands.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true,
	"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "bool": true,
	"offset": true, "start": true, "end": true, "inf": true, "nan": true,
}

// Modifiers followed by a parenthesised list of label names.
var labelListModifiers = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true,
}

// grafanaVar matches Grafana's variables ($__rate_interval, ${name},
// $name), which stand where PromQL has a duration or a value.
var grafanaVar = regexp.MustCompile(`\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*`)

// metricNames returns the metric names that a PromQL expression selects,
// in order of appearance, duplicates removed. It is a tokenizer, not a
// full parser (the Prometheus parser would bring the Prometheus server's
// module into watershed's): string literals, label matchers (but for
// __name__), range and subquery brackets, numbers and durations are
// skipped; an identifier followed by "(", "by" or "without" is a function
// or an aggregation;
// the label lists of by, without, on, ignoring, group_left and
// group_right are skipped; keywords are skipped; every other identifier
// is a metric name. It fails on unbalanced brackets and unterminated
// strings.
func metricNames(expr string) ([]string, error) {
	s := grafanaVar.ReplaceAllString(expr, "1m")
	var names []string
	seen := map[string]bool{}
	addName := func(n string) {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '#': // a comment runs to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '{':
			end, matched, err := skipMatchers(s, i)
			if err != nil {
				return nil, err
			}
			for _, n := range matched {
				addName(n)
			}
			i = end
		case c == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("promql %q: unclosed [", expr)
			}
			i += end + 1
		case c >= '0' && c <= '9' || c == '.':
			// A number or a duration (5m, 1h30m, 0x1f, 1e3).
			for i < len(s) && (isIdentChar(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			word := s[i:j]
			next := skipSpace(s, j)
			switch {
			case labelListModifiers[word] && next < len(s) && s[next] == '(':
				end := strings.IndexByte(s[next:], ')')
				if end < 0 {
					return nil, fmt.Errorf("promql %q: unclosed ( after %s", expr, word)
				}
				j = next + end + 1
			case promqlKeywords[word]:
			case next < len(s) && s[next] == '(':
				// A function or an aggregation.
			case hasWordAt(s, next, "by") || hasWordAt(s, next, "without"):
				// An aggregation with its grouping first: sum by (x) (...).
			default:
				addName(word)
			}
			i = j
		default:
			i++
		}
	}
	return names, nil
}

// skipString returns the index after the string literal that starts at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("promql %q: unterminated string", s)
}

// skipMatchers returns the index after the label matchers that start at
// i, and the metric names that __name__ matchers select by equality.
func skipMatchers(s string, i int) (int, []string, error) {
	var names []string
	for j := i + 1; j < len(s); {
		switch c := s[j]; {
		case c == '}':
			return j + 1, names, nil
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, j)
			if err != nil {
				return 0, nil, err
			}
			j = end
		case isIdentStart(c):
			k := j
			for k < len(s) && isIdentChar(s[k]) {
				k++
			}
			label := s[j:k]
			j = skipSpace(s, k)
			if label == "__name__" && j < len(s) && s[j] == '=' && j+1 < len(s) && s[j+1] != '~' {
				v := skipSpace(s, j+1)
				if v < len(s) && (s[v] == '"' || s[v] == '\'' || s[v] == '`') {
					end, err := skipString(s, v)
					if err != nil {
						return 0, nil, err
					}
					names = append(names, s[v+1:end-1])
				}
			}
		default:
			j++
		}
	}
	return 0, nil, fmt.Errorf("promql %q: unclosed {", s)
}

// hasWordAt reports whether the identifier at i is word.
func hasWordAt(s string, i int, word string) bool {
	return strings.HasPrefix(s[i:], word) && (i+len(word) == len(s) || !isIdentChar(s[i+len(word)]))
}

func skipSpace(s string, i int) int {
	for i < len(s) && strings.ContainsRune(" \t\r\n", rune(s[i])) {
		i++
	}
	return i
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
