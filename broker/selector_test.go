package broker

import (
	"testing"
)

func TestSelectorEvaluation(t *testing.T) {
	t.Parallel()
	headers := map[string]string{
		"color": "red", "size": "10", "weight": "2.5", "flag": "true", "priority": "7",
		"message-id": "ID:1", "type": "order", "name": "50%_off", "empty": "",
	}
	get := func(k string) (string, bool) { v, ok := headers[k]; return v, ok }
	tests := []struct {
		sel  string
		want bool
	}{
		{"color = 'red'", true},
		{"color <> 'red'", false},
		{"size = 10", true},
		{"size > 9 AND size < 11", true},
		{"size >= 10 AND size <= 10", true},
		{"weight * 2 = 5", true},
		{"size + 5 - 3 = 12", true},
		{"size / 4 = 2.5", true},
		{"-size = -10", true},
		{"size / 0 = 1", false}, // NULL
		{"size BETWEEN 5 AND 15", true},
		{"size NOT BETWEEN 5 AND 15", false},
		{"color IN ('blue', 'red')", true},
		{"color NOT IN ('blue', 'red')", false},
		{"size IN (10, 11)", true},
		{"color LIKE 'r%'", true},
		{"color LIKE 'r_d'", true},
		{"color LIKE 'r_'", false},
		{"color NOT LIKE 'b%'", true},
		{"name LIKE '50!%!_off' ESCAPE '!'", true},
		{"name LIKE '50!%x' ESCAPE '!'", false},
		{"missing IS NULL", true},
		{"color IS NOT NULL", true},
		{"empty IS NULL", false},
		{"flag = TRUE", true},
		{"flag", true},
		{"NOT flag", false},
		{"JMSPriority > 5", true},
		{"JMSMessageID = 'ID:1'", true},
		{"JMSType = 'order'", true},
		{"(color = 'blue' OR size = 10) AND NOT (type = 'x')", true},
		// three-valued logic with NULL
		{"missing = 1", false},
		{"NOT (missing = 1)", false},
		{"missing = 1 OR color = 'red'", true},
		{"missing = 1 AND color = 'red'", false},
		{"NOT (missing = 1 AND color = 'blue')", true}, // unknown AND false = false
		{"missing IN ('a')", false},
		{"missing NOT IN ('a')", false},
		{"missing LIKE '%'", false},
		{"missing BETWEEN 1 AND 2", false},
		{"color > 5", false}, // not comparable: unknown
		{"TRUE", true},
		{"FALSE OR TRUE", true},
		{"1.5e1 = 15", true},
		{"color = 'it''s'", false},
		{"and_x IS NULL", true},
	}
	for _, tc := range tests {
		t.Run(tc.sel, func(t *testing.T) {
			t.Parallel()
			s, err := parseSelector(tc.sel)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if got := s.matches(get); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSelectorSyntaxErrors(t *testing.T) {
	t.Parallel()
	for _, sel := range []string{
		"", "color =", "= 1", "color = = 1", "(a = 1", "a = 1)", "a IN ()", "a IN (b)",
		"a LIKE b", "a LIKE 'x' ESCAPE 'ab'", "a LIKE 'x!' ESCAPE '!'", "a NOT 1", "a IS 1",
		"'unterminated", "a # 1", "a BETWEEN 1", "1.2.3 = a", "a = 1 b",
		string(make([]byte, 20000)),
	} {
		if _, err := parseSelector(sel); err == nil {
			t.Errorf("%q: parsed, want an error", sel)
		}
	}
	deep := ""
	for range 1000 {
		deep += "("
	}
	if _, err := parseSelector(deep + "a=1"); err == nil {
		t.Error("deep nesting accepted")
	}
}

// FuzzSelector: parsing and evaluating any text must not panic or hang.
func FuzzSelector(f *testing.F) {
	for _, s := range []string{
		"color = 'red'", "a > 1 AND b < 2 OR NOT c", "x IN ('a','b')", "x LIKE '%a_' ESCAPE '\\'",
		"x BETWEEN 1 AND 2", "x IS NOT NULL", "-(a + b) * c / d >= 1e3", "JMSPriority > 4", "((((a))))",
	} {
		f.Add(s, "1")
	}
	f.Fuzz(func(t *testing.T, sel, val string) {
		s, err := parseSelector(sel)
		if err != nil {
			return
		}
		s.matches(func(string) (string, bool) { return val, val != "" })
	})
}
