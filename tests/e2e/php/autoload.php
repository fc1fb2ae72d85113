<?php
// Loads the official Pusher PHP SDK from ../shared/third_party (unmodified;
// see its SOURCE.md) and, from Debian's packages, Guzzle 7, psr/log and
// Laravel 8.83's Illuminate classes. HERALD_PHP_SDK overrides where the
// SDK is.

$sdk = getenv('HERALD_PHP_SDK') ?: dirname(__DIR__, 4) . '/shared/third_party/pusher-php-server';
if (!is_file($sdk . '/src/Pusher.php')) {
    fwrite(STDERR, "the Pusher PHP SDK is not at $sdk (set HERALD_PHP_SDK)\n");
    exit(3);
}
set_include_path(get_include_path() . PATH_SEPARATOR . '/usr/share/php');
spl_autoload_register(function ($class) use ($sdk) {
    if (strncmp($class, 'Pusher\\', 7) === 0) {
        $file = $sdk . '/src/' . str_replace('\\', '/', substr($class, 7)) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
require_once 'GuzzleHttp/autoload.php';
require_once 'Psr/Log/autoload.php';
if (!empty($GLOBALS['with_laravel'])) {
    require_once 'Illuminate/autoload.php';
}
