package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/glimpse-project/glimpse/api/client"
)

// The client commands' output, as the glance CLI prints it: prettytable
// boxes with Python's renderings of values, or JSON for scripts.

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// printImage prints img as glance's Property/Value table, or as JSON.
func printImage(w io.Writer, img client.Image, asJSON bool) error {
	if asJSON {
		return printJSON(w, img)
	}
	keys := make([]string, 0, len(img))
	for k := range img {
		switch k {
		case "self", "file", "schema":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rows := make([][]string, 0, len(keys))
	for _, k := range keys {
		rows = append(rows, []string{k, displayValue(img[k])})
	}
	fmt.Fprint(w, table([]string{"Property", "Value"}, rows))
	return nil
}

// displayValue renders a value as glance's tables do.
func displayValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return pyJSON(v)
}

// pyJSON renders v as Python's json.dumps does, which glance's tables use
// for lists and objects: ", " and ": " between items (keys sorted).
func pyJSON(v any) string {
	switch x := v.(type) {
	case []any:
		items := make([]string, len(x))
		for i, e := range x {
			items[i] = pyJSON(e)
		}
		return "[" + strings.Join(items, ", ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		items := make([]string, len(keys))
		for i, k := range keys {
			items[i] = pyJSON(k) + ": " + pyJSON(x[k])
		}
		return "{" + strings.Join(items, ", ") + "}"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// table renders rows in glance's (prettytable) box style.
func table(header []string, rows [][]string) string {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len([]rune(h))
	}
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	sep := "+"
	for _, w := range widths {
		sep += strings.Repeat("-", w+2) + "+"
	}
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			b.WriteString(" " + c + strings.Repeat(" ", widths[i]-len([]rune(c))) + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString(sep + "\n")
	line(header)
	b.WriteString(sep + "\n")
	for _, r := range rows {
		line(r)
	}
	b.WriteString(sep + "\n")
	return b.String()
}

// printTags prints glance image-tag-update's table: the image's id and its
// tags as Python shows a list.
func printTags(w io.Writer, img client.Image) {
	var tags []string
	if list, ok := img["tags"].([]any); ok {
		for _, t := range list {
			if s, ok := t.(string); ok {
				tags = append(tags, "'"+s+"'")
			}
		}
	}
	fmt.Fprint(w, table([]string{"ID", "Tags"}, [][]string{{img.ID(), "[" + strings.Join(tags, ", ") + "]"}}))
}
