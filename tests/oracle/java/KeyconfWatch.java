import java.io.PrintStream;
import java.nio.file.FileSystems;
import java.nio.file.Path;
import java.nio.file.StandardWatchEventKinds;
import java.nio.file.WatchEvent;
import java.nio.file.WatchKey;
import java.nio.file.WatchService;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * X-Road's FileWatcher (common-core util/filewatcher) as the signer and keyconf-impl set it up
 * for signer/keyconf.xml: the file's parent directory registered once for ENTRY_CREATE and
 * ENTRY_MODIFY; OVERFLOW skipped; an event counts (the listener runs) when the directory
 * resolved against its context equals the target; the loop ends for good when reset() says the
 * key is no longer valid. Every event is printed, with "target" telling whether X-Road would
 * react to it, so a test sees what the signer sees.
 */
final class KeyconfWatch {
    private KeyconfWatch() {
    }

    static void run(Path dir, String fileName, PrintStream out) throws Exception {
        Path target = dir.resolve(fileName);
        WatchService service = FileSystems.getDefault().newWatchService();
        dir.register(service, StandardWatchEventKinds.ENTRY_CREATE,
                StandardWatchEventKinds.ENTRY_MODIFY);
        out.println("{\"ready\": true}");
        while (true) {
            WatchKey key = service.take();
            for (WatchEvent<?> event : key.pollEvents()) {
                if (event.kind() == StandardWatchEventKinds.OVERFLOW) {
                    out.println("{\"kind\": \"OVERFLOW\"}");
                    continue;
                }
                Path name = (Path) event.context();
                Map<String, Object> line = new LinkedHashMap<>();
                line.put("kind", event.kind().name());
                line.put("name", name.toString());
                line.put("target", target.equals(dir.resolve(name)));
                out.println(Json.value(line));
            }
            if (!key.reset()) {
                out.println("{\"invalid\": true}");
                return;
            }
        }
    }
}
