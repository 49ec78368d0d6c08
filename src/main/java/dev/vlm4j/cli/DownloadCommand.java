package dev.vlm4j.cli;

import dev.vlm4j.hub.HubDownloader;
import dev.vlm4j.hub.HubSettings;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code vlm4j download ORG/NAME}: fetches a model into the Hugging Face cache and prints its snapshot folder. */
@Command(name = "download", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Download a model from Hugging Face or ModelScope into the Hugging Face cache",
                "(~/.cache/huggingface/hub/models--ORG--NAME/snapshots/REV), resuming partial files and checking sha256.",
                "Honours HF_ENDPOINT, HF_TOKEN, HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, MODELSCOPE_DOMAIN, MODELSCOPE_API_TOKEN."})
public final class DownloadCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "ORG/NAME", description = "Repository id.")
    String repo;

    @Option(names = "--revision", paramLabel = "REV", description = "Branch, tag or commit (default main; master on ModelScope).")
    String revision;

    @Option(names = "--source", defaultValue = "huggingface", paramLabel = "HUB", description = "huggingface (default) or modelscope.")
    String source;

    @Option(names = "--include", paramLabel = "GLOB", description = "Only files matching GLOB (repeatable).")
    List<String> include = new ArrayList<>();

    @Option(names = "--cache-dir", paramLabel = "DIR", description = "Cache root (default: HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub).")
    Path cacheDir;

    @Option(names = "--offline", description = "Only look in the cache (as HF_HUB_OFFLINE=1).")
    boolean offline;

    @Option(names = "--quiet", description = "No progress bars.")
    boolean quiet;

    @Override
    public Integer call() {
        HubSettings s = HubSettings.fromEnvironment(HubSettings.Source.parse(source), System.getenv());
        if (cacheDir != null) s = new HubSettings(s.source(), s.endpoint(), s.token(), cacheDir, s.offline(), s.progress());
        if (offline) s = s.withOffline(true);
        if (quiet) s = s.withProgress(false);
        Path snap = new HubDownloader(s).download(repo, revision, include);
        System.out.println(snap);
        return 0;
    }
}
