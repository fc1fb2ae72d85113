<?php
// Runs one PHP block of docs/laravel.md the way the guide means it to be
// used, with Laravel 8.83's framework (Debian's php-laravel-framework) and
// the official Pusher PHP SDK, against a running Herald
// (tests/e2e/docs.test.mjs). One JSON argument:
//   {"name": "<the block's marker>", "code": "<the block>", "port": N,
//    "app": {"id","key","secret"}, "socket_id": "..", "channel": ".."}
// Prints one JSON object: what the block produced, for the test to check.

$GLOBALS['with_laravel'] = true;
require __DIR__ . '/autoload.php';

use Illuminate\Auth\GenericUser;
use Illuminate\Broadcasting\BroadcastManager;
use Illuminate\Bus\Dispatcher as Bus;
use Illuminate\Cache\CacheManager;
use Illuminate\Config\Repository;
use Illuminate\Container\Container;
use Illuminate\Contracts\Broadcasting\Factory as BroadcastingFactory;
use Illuminate\Contracts\Bus\Dispatcher as BusContract;
use Illuminate\Events\Dispatcher as Events;
use Illuminate\Http\Request;
use Illuminate\Queue\Connectors\SyncConnector;
use Illuminate\Queue\QueueManager;
use Illuminate\Routing\Router;
use Illuminate\Support\Facades\Facade;

$input = json_decode($argv[1] ?? '', true, 512, JSON_THROW_ON_ERROR);
$port = $input['port'];
$app = $input['app'];

/** The .env the guide's blocks read (through Laravel's env()), pointing at
 * the test's Herald. */
$environment = [
    'PUSHER_APP_ID' => $app['id'],
    'PUSHER_APP_KEY' => $app['key'],
    'PUSHER_APP_SECRET' => $app['secret'],
    'PUSHER_HOST' => '127.0.0.1',
    'PUSHER_PORT' => (string) $port,
    'PUSHER_SCHEME' => 'http',
    'PUSHER_APP_CLUSTER' => 'mt1',
    'REVERB_HOST' => '127.0.0.1',
    'REVERB_PORT' => (string) $port,
    'REVERB_SCHEME' => 'http',
];
foreach ($environment as $name => $value) {
    putenv("$name=$value");
    $_ENV[$name] = $_SERVER[$name] = $value;
}

// The facade aliases of config/app.php that the blocks use unqualified.
foreach (['Broadcast', 'Cache', 'Route'] as $facade) {
    class_alias('Illuminate\\Support\\Facades\\' . $facade, $facade);
}

/** A Laravel application as far as broadcasting needs one. */
function laravel(array $connection): Container
{
    $app = new Container();
    Container::setInstance($app);
    $app->instance('app', $app);
    $app->instance(Illuminate\Contracts\Container\Container::class, $app);
    Facade::clearResolvedInstances();
    Facade::setFacadeApplication($app);
    $app->instance('config', new Repository([
        'broadcasting' => ['default' => 'pusher', 'connections' => ['pusher' => $connection]],
        'queue' => ['default' => 'sync', 'connections' => ['sync' => ['driver' => 'sync']]],
        'cache' => ['default' => 'array', 'stores' => ['array' => ['driver' => 'array']]],
    ]));
    $app->singleton('events', fn ($app) => new Events($app));
    $app->singleton(BroadcastingFactory::class, fn ($app) => new BroadcastManager($app));
    $app->alias(BroadcastingFactory::class, BroadcastManager::class);
    $app->singleton(BusContract::class, fn ($app) => new Bus($app));
    $app->singleton('queue', function ($app) {
        $queue = new QueueManager($app);
        $queue->addConnector('sync', fn () => new SyncConnector());
        return $queue;
    });
    $app->singleton('cache', fn ($app) => new CacheManager($app));
    $app->singleton('router', fn ($app) => new Router($app['events'], $app));
    // response(): only make() is used; the factory's view and redirector are not.
    $app->instance(Illuminate\Contracts\Routing\ResponseFactory::class,
        (new ReflectionClass(Illuminate\Routing\ResponseFactory::class))->newInstanceWithoutConstructor());
    return $app;
}

/** The `pusher` connection of config/broadcasting.php for the test's Herald. */
function pusher_connection(array $options = [], string $driver = 'pusher'): array
{
    return [
        'driver' => $driver,
        'key' => env('PUSHER_APP_KEY'),
        'secret' => env('PUSHER_APP_SECRET'),
        'app_id' => env('PUSHER_APP_ID'),
        'options' => $options ?: ['host' => '127.0.0.1', 'port' => env('PUSHER_PORT'), 'scheme' => 'http'],
    ];
}

/** Evaluates a config fragment (`'key' => [...],`) as the array it is part of. */
function fragment(string $code): array
{
    return eval('return [' . $code . '];');
}

/** A signed-in user, for auth requests. */
function request_by(array $user, string $uri, array $input = []): Request
{
    $request = Request::create($uri, 'POST', $input);
    $signedIn = new GenericUser($user);
    $request->setUserResolver(fn () => $signedIn);
    Container::getInstance()->instance('request', $request);
    Container::getInstance()->instance(Request::class, $request);
    return $request;
}

$code = $input['code'];
$out = [];
switch ($input['name']) {
    case 'broadcasting-options':
        // The edited options, as Laravel passes them to the SDK.
        $config = fragment($code);
        $pusher = new Pusher\Pusher($app['key'], $app['secret'], $app['id'], $config['options']);
        $out['trigger'] = $pusher->trigger('docs', 'checked', ['block' => $input['name']]);
        break;

    case 'client-options':
        // Laravel 9+ makes the SDK's Guzzle client from client_options.
        $config = fragment($code);
        $client = new GuzzleHttp\Client($config['client_options']);
        $pusher = new Pusher\Pusher($app['key'], $app['secret'], $app['id'],
            pusher_connection()['options'], $client);
        $out['verify'] = $config['client_options']['verify'];
        $out['trigger'] = $pusher->trigger('docs', 'checked', ['block' => $input['name']]);
        break;

    case 'laravel-8-ca':
        $laravel = laravel(pusher_connection([], 'herald'));
        eval($code);
        $broadcaster = $laravel->make(BroadcastingFactory::class)->connection('pusher');
        $out['class'] = get_class($broadcaster);
        $broadcaster->broadcast(['docs'], 'checked', ['block' => $input['name']]);
        $out['trigger'] = true;
        break;

    case 'event-class':
        // The class as written, dispatched as an app does; the sync queue
        // runs the broadcast job as `php artisan queue:work` would.
        $laravel = laravel(pusher_connection());
        eval(preg_replace('/^\s*\/\/[^\n]*\n/', '', $code));
        $laravel['events']->dispatch(new App\Events\OrderShipped(5, 7));
        $out['dispatched'] = true;
        break;

    case 'channels':
        // routes/channels.php with the app's Order model, then
        // /broadcasting/auth as Echo calls it, for the owner of order 5.
        eval('class Order { public $user_id; public static function find($id) {'
            . ' $o = new self(); $o->user_id = ((int) $id === 5) ? 7 : 8; return $o; } }');
        $laravel = laravel(pusher_connection());
        eval($code);
        $broadcaster = $laravel->make(BroadcastingFactory::class)->connection();
        $user = ['id' => 7, 'name' => 'Ada'];
        $ask = function (string $channel) use ($broadcaster, $user, $input) {
            try {
                return $broadcaster->auth(request_by($user, '/broadcasting/auth',
                    ['channel_name' => $channel, 'socket_id' => $input['socket_id']]));
            } catch (Symfony\Component\HttpKernel\Exception\HttpException $e) {
                return ['refused' => $e->getStatusCode()];
            }
        };
        $out['own'] = $ask('private-orders.5');
        $out['other'] = $ask('private-orders.6');
        $out['presence'] = $ask('presence-room.1');
        break;

    case 'user-auth-route':
        // The route registered on Laravel's router and run for a signed-in
        // user (its `auth` middleware is the app's to enforce).
        $laravel = laravel(pusher_connection());
        eval($code);
        $request = request_by(['id' => 7], '/broadcasting/user-auth', ['socket_id' => $input['socket_id']]);
        $route = $laravel['router']->getRoutes()->match($request);
        $route->bind($request);
        $request->setRouteResolver(fn () => $route);
        $response = $route->run();
        $out['middleware'] = $route->middleware();
        $out['auth'] = json_decode($response->getContent(), true);
        break;

    case 'polling':
        eval('class Order { public static $resynced = false; public static function resyncFromDatabase() { self::$resynced = true; } }');
        $laravel = laravel(pusher_connection());
        eval($code);
        $out['events'] = $body['events'] ?? null;
        $out['cursor'] = Illuminate\Support\Facades\Cache::get('orders-cursor');
        $out['resynced'] = Order::$resynced;
        break;

    case 'path-option':
        $config = fragment($code);
        $pusher = new Pusher\Pusher($app['key'], $app['secret'], $app['id'], $config['options']);
        $out['path'] = $config['options']['path'];
        $out['trigger'] = $pusher->trigger('docs', 'checked', ['block' => $input['name']]);
        $out['channels'] = $pusher->getChannels();
        break;

    case 'encryption-option':
        // The option added to the connection's options, with the key set
        // (an encrypted event) or unset (no encryption, no failure).
        $key = $input['master_key'] ?? null;
        putenv($key === null ? 'PUSHER_ENCRYPTION_MASTER_KEY_BASE64' : "PUSHER_ENCRYPTION_MASTER_KEY_BASE64=$key");
        unset($_ENV['PUSHER_ENCRYPTION_MASTER_KEY_BASE64'], $_SERVER['PUSHER_ENCRYPTION_MASTER_KEY_BASE64']);
        if ($key !== null) {
            $_ENV['PUSHER_ENCRYPTION_MASTER_KEY_BASE64'] = $_SERVER['PUSHER_ENCRYPTION_MASTER_KEY_BASE64'] = $key;
        }
        $options = pusher_connection()['options'] + fragment($code);
        $pusher = new Pusher\Pusher($app['key'], $app['secret'], $app['id'], $options);
        $channel = $key === null ? 'docs' : 'private-encrypted-docs';
        $out['trigger'] = $pusher->trigger($channel, 'checked', ['block' => $input['name']]);
        break;

    case 'users-api':
        $laravel = laravel(pusher_connection());
        $pusher = Broadcast::connection('pusher')->getPusher();
        eval($code);
        $out['ran'] = true;
        break;

    case 'webhook-route':
        // The route as routes/api.php has it (RouteServiceProvider serves
        // it under /api), given a request Herald really sent.
        eval('namespace App\Models; class Presence { public static $calls = [];'
            . ' public static function join($c, $u) { self::$calls[] = ["join", $c, $u]; }'
            . ' public static function leave($c, $u) { self::$calls[] = ["leave", $c, $u]; } }');
        $laravel = laravel(pusher_connection());
        eval(preg_replace('/^\s*\/\/[^\n]*\n/', '', $code));
        $request = Request::create('/pusher/webhooks', 'POST', [], [], [], [
            'HTTP_X_PUSHER_KEY' => $input['headers']['x-pusher-key'],
            'HTTP_X_PUSHER_SIGNATURE' => $input['headers']['x-pusher-signature'],
            'CONTENT_TYPE' => 'application/json',
        ], $input['body']);
        $laravel->instance('request', $request);
        $laravel->instance(Request::class, $request);
        $route = $laravel['router']->getRoutes()->match($request);
        $route->bind($request);
        try {
            $out['status'] = $route->run()->getStatusCode();
        } catch (Pusher\PusherException $e) {
            $out['refused'] = $e->getMessage();
        }
        $out['presence'] = App\Models\Presence::$calls;
        break;

    default:
        fwrite(STDERR, "no harness for a block named {$input['name']}\n");
        exit(2);
}
echo json_encode($out), "\n";
