import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Pattern;

import org.yaml.snakeyaml.DumperOptions;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.TypeDescription;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.Constructor;
import org.yaml.snakeyaml.constructor.SafeConstructor;
import org.yaml.snakeyaml.error.YAMLException;
import org.yaml.snakeyaml.nodes.Tag;
import org.yaml.snakeyaml.representer.Representer;
import org.yaml.snakeyaml.resolver.Resolver;

/**
 * The SnakeYAML set-ups X-Road reads its YAML with.
 *
 * <ul>
 * <li>{@code yaml}, {@code acme}, {@code mail}: X-Road 7's AcmeCommonConfig and MailConfig
 * (common-acme, common-mail): {@code new Yaml(new Constructor(Root.class, new LoaderOptions()))}
 * and {@code loadAs(stream, Root.class)}, default LoaderOptions (duplicate keys allowed, the last
 * wins; 50 aliases for collections), one document only. On any exception X-Road logs a warning
 * and goes on with empty properties. {@code acme}/{@code mail} bind to classes with the same
 * property names and types as AcmeProperties/MailNotificationProperties, so an unknown key or a
 * value of the wrong type fails as it does there; {@code yaml} is the same parser with no bean.
 * <li>{@code yaml-smallrye}: X-Road 8's Quarkus services (quarkus.config.locations lists
 * conf.d/local.yaml) through SmallRye Config's YamlConfigSource (3.14.x): SafeConstructor whose
 * int, float and timestamp scalars stay strings, default LoaderOptions, loadAll, only mapping
 * documents kept, then flattened to properties.
 * <li>{@code yaml-spring}: X-Road 8's admin service (Spring Boot, spring.config.import of
 * conf.d/local.yaml) through Spring Boot's OriginTrackedYamlLoader: duplicate keys rejected,
 * aliases unlimited, no timestamp resolution, loadAll.
 * </ul>
 *
 * <p>SnakeYAML here is Debian's 1.33; X-Road ships 2.x. Its Constructor in 2.x refuses global
 * (class) tags by default, so the typed modes refuse them too rather than instantiate classes.
 */
final class YamlModes {
    private YamlModes() {
    }

    static String plain(Path path) throws Exception {
        return typed(path, Object.class, null);
    }

    static String acme(Path path) throws Exception {
        return typed(path, AcmeShape.class, acmeDescriptions());
    }

    static String mail(Path path) throws Exception {
        TypeDescription mail = new TypeDescription(MailShape.class);
        mail.substituteProperty("use-ssl-tls", boolean.class, "isUseSslTls", "setUseSslTls");
        return typed(path, MailShape.class, List.of(mail));
    }

    private static String typed(Path path, Class<?> root, List<TypeDescription> descriptions)
            throws Exception {
        Object data;
        try {
            NoGlobalTags constructor = new NoGlobalTags(root, new LoaderOptions());
            if (descriptions != null) {
                descriptions.forEach(constructor::addTypeDescription);
            }
            try (InputStream in = Files.newInputStream(path)) {
                new Yaml(constructor).loadAs(in, root);
            }
            // the bean has no JSON form; the same parse without a bean does
            try (InputStream in = Files.newInputStream(path)) {
                data = new Yaml(new NoGlobalTags(Object.class, new LoaderOptions())).load(in);
            }
        } catch (Exception e) {
            return Oracle.failure(e, "defaults");
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("ok", true);
        out.put("data", data);
        return Json.value(out);
    }

    static String smallrye(Path path) throws Exception {
        List<Object> docs = new ArrayList<>();
        Map<String, String> properties = new TreeMap<>();
        try (InputStream in = Files.newInputStream(path)) {
            for (Object doc : new Yaml(new StringScalars(new LoaderOptions())).loadAll(in)) {
                docs.add(doc);
                if (doc instanceof Map<?, ?> m) {
                    Map<String, String> flat = new TreeMap<>();
                    flatten("", m, flat, false);
                    properties.putAll(flat);
                }
            }
        } catch (Exception e) {
            return Oracle.failure(e, "service-fails");
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("ok", true);
        out.put("data", docs);
        out.put("properties", properties);
        return Json.value(out);
    }

    static String spring(Path path) throws Exception {
        LoaderOptions options = new LoaderOptions();
        options.setAllowDuplicateKeys(false);
        options.setMaxAliasesForCollections(Integer.MAX_VALUE);
        DumperOptions dumper = new DumperOptions();
        Yaml yaml = new Yaml(new SafeConstructor(options), new Representer(dumper), dumper, options,
                new NoTimestamps());
        List<Object> docs = new ArrayList<>();
        try (InputStream in = Files.newInputStream(path)) {
            for (Object doc : yaml.loadAll(in)) {
                docs.add(doc);
            }
        } catch (Exception e) {
            return Oracle.failure(e, "service-fails");
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("ok", true);
        out.put("data", docs);
        return Json.value(out);
    }

    /**
     * SmallRye's flattening as of 3.14: a key with a dot is quoted, nested maps join with '.',
     * list items get "[i]" (no dot), a list of only strings/booleans also yields the whole list
     * comma-joined with ',' and '\' escaped, a null value yields no property at all.
     */
    @SuppressWarnings("unchecked")
    private static void flatten(String path, Map<?, ?> source, Map<String, String> target,
            boolean indexed) {
        source.forEach((k, value) -> {
            String key = k == null ? "" : k.toString();
            if (key.contains(".")) {
                key = "\"" + key + "\"";
            }
            if (!key.isEmpty() && !path.isEmpty()) {
                key = indexed ? path + key : path + "." + key;
            } else if (!path.isEmpty()) {
                key = path;
            }
            if (value instanceof String s) {
                target.put(key, s);
            } else if (value instanceof Map<?, ?> m) {
                flatten(key, m, target, false);
            } else if (value instanceof List<?> list) {
                joinList(key, list, target);
                for (int i = 0; i < list.size(); i++) {
                    Map<Object, Object> one = new LinkedHashMap<>();
                    one.put("[" + i + "]", list.get(i));
                    flatten(key, one, target, true);
                }
            } else if (value != null) {
                target.put(key, value.toString());
            }
        });
    }

    private static void joinList(String key, List<?> list, Map<String, String> target) {
        List<String> parts = new ArrayList<>();
        for (Object v : list) {
            if (v instanceof String || v instanceof Boolean) {
                parts.add(v.toString().replace("\\", "\\\\").replace(",", "\\,"));
            } else if (v != null) {
                return;
            }
        }
        target.put(key, String.join(",", parts));
    }

    private static List<TypeDescription> acmeDescriptions() {
        TypeDescription root = new TypeDescription(AcmeShape.class);
        root.substituteProperty("eab-credentials", AcmeShape.Eab.class, "getEabCredentials",
                "setEabCredentials");
        root.substituteProperty("account-keystore-password", String.class,
                "getAccountKeystorePassword", "setAccountKeystorePassword");
        TypeDescription eab = new TypeDescription(AcmeShape.Eab.class);
        eab.substituteProperty("certificate-authorities", Map.class, "getCertificateAuthorities",
                "setCertificateAuthorities", String.class, AcmeShape.Ca.class);
        TypeDescription ca = new TypeDescription(AcmeShape.Ca.class);
        ca.substituteProperty("mac-key-base64-encoded", boolean.class, "isMacKeyBase64Encoded",
                "setMacKeyBase64Encoded");
        TypeDescription cred = new TypeDescription(AcmeShape.Credentials.class);
        cred.substituteProperty("mac-key", String.class, "getMacKey", "setMacKey");
        cred.substituteProperty("auth-mac-key", String.class, "getAuthMacKey", "setAuthMacKey");
        cred.substituteProperty("sign-mac-key", String.class, "getSignMacKey", "setSignMacKey");
        cred.substituteProperty("auth-kid", String.class, "getAuthKid", "setAuthKid");
        cred.substituteProperty("sign-kid", String.class, "getSignKid", "setSignKid");
        return List.of(root, eab, ca, cred);
    }

    /** SnakeYAML 2.x's default: a global tag naming a class is an error, not an instantiation. */
    static final class NoGlobalTags extends Constructor {
        NoGlobalTags(Class<?> root, LoaderOptions options) {
            super(root, options);
        }

        @Override
        protected Class<?> getClassForName(String name) {
            throw new YAMLException("Global tags are not allowed: " + name);
        }
    }

    /** SmallRye's: numbers and timestamps are kept as the text that was written. */
    static final class StringScalars extends SafeConstructor {
        StringScalars(LoaderOptions options) {
            super(options);
            this.yamlConstructors.put(Tag.INT, new ConstructYamlStr());
            this.yamlConstructors.put(Tag.FLOAT, new ConstructYamlStr());
            this.yamlConstructors.put(Tag.TIMESTAMP, new ConstructYamlStr());
        }
    }

    /** Spring Boot's: timestamps are not resolved, so they stay strings. */
    static final class NoTimestamps extends Resolver {
        @Override
        public void addImplicitResolver(Tag tag, Pattern regexp, String first) {
            if (tag != Tag.TIMESTAMP) {
                super.addImplicitResolver(tag, regexp, first);
            }
        }

        @Override
        public void addImplicitResolver(Tag tag, Pattern regexp, String first, int limit) {
            if (tag != Tag.TIMESTAMP) {
                super.addImplicitResolver(tag, regexp, first, limit);
            }
        }
    }
}
