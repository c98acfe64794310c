import java.util.Arrays;
import java.util.Base64;
import java.util.Collection;
import java.util.Date;
import java.util.Map;

/**
 * A JSON writer small enough to read at a glance: the harness must not pull in a JSON library
 * that Debian would have to ship, and every value the readers hand back is a map, list, string,
 * number, boolean, null, date or byte array.
 */
final class Json {
    private Json() {
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder(s.length() + 2);
        b.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    // every character Python's str.splitlines breaks on is escaped, so one
                    // answer stays one line (NEL U+0085 came out raw and split it in two)
                    if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x2028 || c == 0x2029) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        // lone surrogates are kept as escapes so the line stays valid UTF-8
                        if (Character.isSurrogate(c)) {
                            boolean paired = Character.isHighSurrogate(c) && i + 1 < s.length()
                                    && Character.isLowSurrogate(s.charAt(i + 1));
                            if (paired) {
                                b.append(c).append(s.charAt(++i));
                            } else {
                                b.append(String.format("\\u%04x", (int) c));
                            }
                        } else {
                            b.append(c);
                        }
                    }
                }
            }
        }
        return b.append('"').toString();
    }

    static String value(Object v) {
        StringBuilder b = new StringBuilder();
        write(b, v);
        return b.toString();
    }

    /** Object keys are stringified: YAML allows non-string keys, JSON does not. */
    static void write(StringBuilder b, Object v) {
        if (v == null) {
            b.append("null");
        } else if (v instanceof String s) {
            b.append(quote(s));
        } else if (v instanceof Boolean) {
            b.append(v);
        } else if (v instanceof Double d && (d.isNaN() || d.isInfinite())) {
            b.append(quote(d.toString()));
        } else if (v instanceof Float f && (f.isNaN() || f.isInfinite())) {
            b.append(quote(f.toString()));
        } else if (v instanceof Number) {
            b.append(v);
        } else if (v instanceof Map<?, ?> m) {
            b.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : m.entrySet()) {
                if (!first) {
                    b.append(", ");
                }
                first = false;
                b.append(quote(String.valueOf(e.getKey()))).append(": ");
                write(b, e.getValue());
            }
            b.append('}');
        } else if (v instanceof Collection<?> c) {
            writeAll(b, c);
        } else if (v instanceof Object[] a) {
            writeAll(b, Arrays.asList(a));
        } else if (v instanceof byte[] bytes) {
            b.append(quote(Base64.getEncoder().encodeToString(bytes)));
        } else if (v instanceof Date d) {
            b.append(quote(d.toInstant().toString()));
        } else {
            b.append(quote(v.toString()));
        }
    }

    private static void writeAll(StringBuilder b, Collection<?> c) {
        b.append('[');
        boolean first = true;
        for (Object o : c) {
            if (!first) {
                b.append(", ");
            }
            first = false;
            write(b, o);
        }
        b.append(']');
    }
}
