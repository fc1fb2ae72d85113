<?php
// Laravel's own broadcasting (Illuminate 8.83 from Debian's
// php-laravel-framework, with the official Pusher PHP SDK) against Herald:
// the BroadcastManager built from a `broadcasting` config as
// config/broadcasting.php gives it, then either
//   {"do": "broadcast", "socket_id": ".."}: broadcast(new OrderShipped)->toOthers()
//   {"do": "auth", "channel_name": "..", "socket_id": "..", "user": {"id", "name"}}: Broadcast::auth()
// One JSON argument: {"connection": {...the pusher connection...}, "do": ...}.
// Prints the result as JSON.

$GLOBALS['with_laravel'] = true;
require __DIR__ . '/autoload.php';

use Illuminate\Auth\GenericUser;
use Illuminate\Broadcasting\BroadcastManager;
use Illuminate\Broadcasting\Channel;
use Illuminate\Broadcasting\InteractsWithSockets;
use Illuminate\Broadcasting\PresenceChannel;
use Illuminate\Broadcasting\PrivateChannel;
use Illuminate\Bus\Dispatcher as Bus;
use Illuminate\Config\Repository;
use Illuminate\Container\Container;
use Illuminate\Contracts\Broadcasting\Factory as BroadcastingFactory;
use Illuminate\Contracts\Broadcasting\ShouldBroadcastNow;
use Illuminate\Contracts\Bus\Dispatcher as BusContract;
use Illuminate\Events\Dispatcher as Events;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Facade;

$input = json_decode($argv[1] ?? '', true, 512, JSON_THROW_ON_ERROR);

$app = new Container();
Container::setInstance($app);
Facade::setFacadeApplication($app);
$app->instance('config', new Repository([
    'broadcasting' => [
        'default' => 'pusher',
        'connections' => ['pusher' => $input['connection']],
    ],
]));
$app->singleton(BroadcastingFactory::class, fn ($app) => new BroadcastManager($app));
$app->alias(BroadcastingFactory::class, BroadcastManager::class);
$app->singleton(BusContract::class, fn ($app) => new Bus($app));
$app->singleton('events', fn ($app) => new Events($app));

/** What an app's event looks like: broadcast now, to a private and a public channel. */
class OrderShipped implements ShouldBroadcastNow
{
    use InteractsWithSockets;

    public function __construct(public int $id)
    {
    }

    public function broadcastOn()
    {
        return [new PrivateChannel('orders.' . $this->id), new Channel('news')];
    }

    public function broadcastAs()
    {
        return 'order.shipped';
    }
}

$manager = $app->make(BroadcastingFactory::class);
switch ($input['do']) {
    case 'broadcast':
        // broadcast(new OrderShipped(1))->toOthers(): the socket id comes from
        // the request's X-Socket-ID header, as Echo sends it.
        $request = Request::create('/orders/1/ship', 'POST');
        $request->headers->set('X-Socket-ID', $input['socket_id']);
        $app->instance('request', $request);
        $pending = $manager->event(new OrderShipped(1));
        $pending->toOthers();
        unset($pending); // PendingBroadcast dispatches when it goes away.
        echo json_encode(['broadcast' => true]), "\n";
        break;
    case 'auth':
        // routes/channels.php
        $broadcaster = $manager->connection();
        $broadcaster->channel('orders.{id}', fn ($user, $id) => (int) $user->id === (int) $id);
        $broadcaster->channel('room.{id}', fn ($user, $id) => ['id' => $user->id, 'name' => $user->name]);
        // POST /broadcasting/auth as Echo sends it, by a signed-in user.
        $request = Request::create('/broadcasting/auth', 'POST', [
            'channel_name' => $input['channel_name'],
            'socket_id' => $input['socket_id'],
        ]);
        $user = new GenericUser($input['user']);
        $request->setUserResolver(fn () => $user);
        try {
            echo json_encode(['auth' => $broadcaster->auth($request)]), "\n";
        } catch (Symfony\Component\HttpKernel\Exception\HttpException $e) {
            echo json_encode(['refused' => $e->getStatusCode()]), "\n";
        }
        break;
    default:
        fwrite(STDERR, "unknown action\n");
        exit(2);
}
