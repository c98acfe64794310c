import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * Entry point of the test oracle: {@code Oracle MODE PATH...} prints one JSON line per path, in
 * order, so one JVM (slow to start) answers for a whole tree; {@code Oracle watch DIR [NAME]}
 * streams watch events instead. Exit status 2 means the command line itself was wrong.
 */
public final class Oracle {
    private Oracle() {
    }

    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        if (args.length < 1) {
            usage();
            return;
        }
        String mode = args[0];
        if (mode.equals("watch")) {
            if (args.length < 2 || args.length > 3) {
                usage();
                return;
            }
            KeyconfWatch.run(Paths.get(args[1]), args.length == 3 ? args[2] : "keyconf.xml", out);
            return;
        }
        for (int i = 1; i < args.length; i++) {
            Path path = Paths.get(args[i]);
            String line;
            try {
                line = switch (mode) {
                    case "ini" -> IniModes.systemProperties(path);
                    case "devices" -> IniModes.devices(path);
                    case "properties" -> properties(path, false);
                    case "properties-utf8" -> properties(path, true);
                    case "yaml" -> YamlModes.plain(path);
                    case "acme" -> YamlModes.acme(path);
                    case "mail" -> YamlModes.mail(path);
                    case "yaml-smallrye" -> YamlModes.smallrye(path);
                    case "yaml-spring" -> YamlModes.spring(path);
                    case "keyconf" -> Keyconf.read(path);
                    default -> null;
                };
            } catch (Throwable t) {
                // a reader that fails in a way its caller in X-Road does not catch
                line = failure(t, "service-fails");
            }
            if (line == null) {
                usage();
                return;
            }
            out.println(line);
        }
    }

    private static void usage() {
        System.err.println("usage: Oracle {ini|devices|properties|properties-utf8|yaml|acme|mail"
                + "|yaml-smallrye|yaml-spring|keyconf} PATH... | Oracle watch DIR [FILENAME]");
        System.exit(2);
    }

    /**
     * A reader's failure: the exception's class and message, and what X-Road does about it
     * ({@code consequence}), which depends on where the caller catches it.
     */
    static String failure(Throwable t, String consequence) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("ok", false);
        out.put("exception", t.getClass().getName());
        out.put("error", String.valueOf(t.getMessage()));
        out.put("consequence", consequence);
        return Json.value(out);
    }

    /**
     * java.util.Properties.load as X-Road reads .properties files. {@code utf8 == false}: from
     * an InputStream (ISO-8859-1, backslash escapes), as X-Road 7's HibernateUtil and the admin
     * API's PropertyFileReadingEnvironmentPostProcessor read db.properties and logback reads
     * variables-logback.properties. {@code utf8 == true}: from a UTF-8 InputStreamReader, as
     * SmallRye Config (X-Road 8's Quarkus services, quarkus.config.locations) reads
     * db.properties; malformed bytes become U+FFFD there instead of failing. Entries come in the
     * order of first appearance with the value that wins (the last).
     */
    static String properties(Path path, boolean utf8) throws Exception {
        List<String> order = new ArrayList<>();
        Properties props = new Properties() {
            private static final long serialVersionUID = 1L;

            @Override
            public synchronized Object put(Object key, Object value) {
                if (!containsKey(key)) {
                    order.add((String) key);
                }
                return super.put(key, value);
            }
        };
        try (InputStream in = Files.newInputStream(path)) {
            if (utf8) {
                props.load(new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8)));
            } else {
                props.load(in);
            }
        } catch (IllegalArgumentException e) {
            return failure(e, "unreadable");
        }
        List<Object> entries = new ArrayList<>();
        for (String key : order) {
            entries.add(List.of("", key, props.getProperty(key)));
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("ok", true);
        out.put("entries", entries);
        return Json.value(out);
    }
}
